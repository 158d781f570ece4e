"""TransformerLens's token and generation methods for tinyinterp's models.

``to_tokens``, ``to_str_tokens``, ``to_string``, ``to_single_token``, ``get_token_position``,
``tokens_to_residual_directions`` and ``generate`` with TL's arguments, on our
:class:`tinyinterp.data.tokenizer.Tokenizer` and KV cache.

**What ``prepend_bos`` means here.** Our models (and the official TinyStories checkpoints) are trained
on stories joined by ``<|endoftext|>``: the start of every story in training follows that token, and
there is no other BOS. So ``prepend_bos=True`` (the default, ``cfg.default_prepend_bos``) puts
``<|endoftext|>`` first — the model then sees a prompt exactly as it saw a story start, and TL's
"position 0 is a BOS attention sink" assumption holds. ``prepend_bos=False`` gives the raw tokens, as
``tokenizer.encode`` does (use it for ``to_single_token`` and for mid-story fragments).
"""

from __future__ import annotations

from typing import Sequence

import einops
import numpy as np
import torch
from tqdm.auto import tqdm

from tinyinterp.errors import TinyinterpError


class TokenMethods:
    """Mixed into :class:`tinyinterp.models.transformer.HookedTransformer`; needs ``self.tokenizer`` and ``self.cfg``."""

    def _require_tokenizer(self):
        if self.tokenizer is None:
            raise TinyinterpError("this model has no tokenizer; load it with tinyinterp.load(...) or set model.tokenizer")
        return self.tokenizer

    def _device(self) -> torch.device:
        return self.W_E.device

    def _encode(self, text: str, prepend_bos: bool | None) -> list[int]:
        from tinyinterp.models.generation import prompt_ids  # the one BOS policy

        bos = self.cfg.default_prepend_bos if prepend_bos is None else prepend_bos
        return prompt_ids(self._require_tokenizer(), text, prepend_bos=bos)

    def _padding_side(self, padding_side: str | None) -> str:
        """``padding_side``, else the tokenizer's ``padding_side`` (TL's default), else ``"right"``."""
        side = padding_side if padding_side is not None else getattr(self.tokenizer, "padding_side", None) or "right"
        if side not in ("left", "right"):
            raise TinyinterpError(f"padding_side must be 'left' or 'right', got {side!r}")
        return side

    def _tokenize(
        self, input: str | Sequence[str], prepend_bos: bool | None = None, padding_side: str | None = None,
        truncate: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(tokens (batch, pos) on the model's device, bool mask of real tokens or None when no row was padded)."""
        texts = [input] if isinstance(input, str) else list(input)
        if not texts:
            raise TinyinterpError("to_tokens: no text given")
        side = self._padding_side(padding_side)
        encoded = [self._encode(t, prepend_bos) for t in texts]
        if truncate:
            encoded = [ids[: self.cfg.n_ctx] for ids in encoded]
        width = max(len(ids) for ids in encoded)
        pad = self._require_tokenizer().eot_id
        rows, real = [], []
        for ids in encoded:
            fill = width - len(ids)
            rows.append([pad] * fill + ids if side == "left" else ids + [pad] * fill)
            real.append([False] * fill + [True] * len(ids) if side == "left" else [True] * len(ids) + [False] * fill)
        device = self._device()
        tokens = torch.tensor(rows, dtype=torch.long, device=device)
        mask = torch.tensor(real, dtype=torch.bool, device=device)
        return tokens, (None if bool(mask.all()) else mask)

    def to_tokens(
        self,
        input: str | Sequence[str],
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
        move_to_device: bool = True,
        truncate: bool = True,
    ) -> torch.Tensor:
        """Text (or a list of texts) → LongTensor (batch, pos). Texts of different lengths are padded
        with ``<|endoftext|>`` on ``padding_side`` (default: the tokenizer's ``padding_side``, else
        right); ``truncate`` cuts to ``n_ctx``. ``forward`` masks that padding when given the texts."""
        tokens, _ = self._tokenize(input, prepend_bos=prepend_bos, padding_side=padding_side, truncate=truncate)
        return tokens if move_to_device else tokens.cpu()

    def to_str_tokens(self, input, prepend_bos: bool | None = None, padding_side: str | None = None):
        """Text, a 1-D token sequence, or a (1, pos) tensor → list of token strings (each token decoded
        on its own, as TL does); a list of texts or a (batch, pos) tensor → list of such lists."""
        tokenizer = self._require_tokenizer()
        if isinstance(input, str):
            ids = self._encode(input, prepend_bos)
            return [tokenizer.decode([i]) for i in ids]
        if isinstance(input, list) and input and isinstance(input[0], str):
            return [self.to_str_tokens(text, prepend_bos) for text in input]
        ids = torch.as_tensor(np.asarray(input) if not torch.is_tensor(input) else input)
        if ids.dim() == 2:
            if ids.shape[0] != 1:
                return [self.to_str_tokens(row) for row in ids]
            ids = ids[0]
        if ids.dim() == 0:
            ids = ids[None]
        return [tokenizer.decode([int(i)]) for i in ids.tolist()]

    def to_string(self, tokens) -> str | list[str]:
        """Token ids → text; a (batch, pos) tensor → a list of texts."""
        tokenizer = self._require_tokenizer()
        ids = torch.as_tensor(tokens)
        if ids.dim() == 2:
            return [tokenizer.decode(row) for row in ids.tolist()]
        return tokenizer.decode(ids.reshape(-1).tolist())

    def to_single_token(self, string: str) -> int:
        """The id of ``string`` if it is exactly one token (e.g. ``" Lily"``), else an error."""
        ids = self._encode(string, prepend_bos=False)
        if len(ids) != 1:
            raise TinyinterpError(f"to_single_token: {string!r} is {len(ids)} tokens, not one")
        return ids[0]

    def to_single_str_token(self, int_token: int) -> str:
        """The text of token id ``int_token`` (TL's inverse of ``to_single_token``)."""
        if not isinstance(int_token, int) or not 0 <= int_token < self.cfg.d_vocab:
            raise TinyinterpError(f"to_single_str_token: expected a token id in [0, {self.cfg.d_vocab}), got {int_token!r}")
        return self.to_str_tokens(torch.tensor([int_token]))[0]

    def get_token_position(self, single_token, input, mode: str = "first", prepend_bos: bool | None = None,
                           padding_side: str | None = None) -> int:
        """Index of ``single_token`` (a string or id) in ``input`` (text or a 1-D / (1, pos) tensor)."""
        tokens = self.to_tokens(input, prepend_bos=prepend_bos) if isinstance(input, str) else torch.as_tensor(input)
        if tokens.dim() == 2:
            if tokens.shape[0] != 1:
                raise TinyinterpError(f"get_token_position: input must have batch size 1, got {tokens.shape[0]}")
            tokens = tokens[0]
        token_id = self.to_single_token(single_token) if isinstance(single_token, str) else int(single_token)
        hits = (tokens == token_id).nonzero().flatten()
        if len(hits) == 0:
            raise TinyinterpError(f"get_token_position: token {single_token!r} is not in the input")
        if mode not in ("first", "last"):
            raise TinyinterpError(f"get_token_position: mode must be 'first' or 'last', got {mode!r}")
        return int(hits[0] if mode == "first" else hits[-1])

    def tokens_to_residual_directions(self, tokens):
        """Unembedding directions: one token (string, id or one-element tensor) → (d_model,); several
        ids (...) → (..., d_model)."""
        if isinstance(tokens, str):
            tokens = self.to_single_token(tokens)
        if isinstance(tokens, int) or (torch.is_tensor(tokens) and tokens.numel() == 1):
            return self.W_U[:, int(tokens)]  # one token, whatever its shape: (d_model,), as TL does
        directions = self.W_U[:, torch.as_tensor(tokens, device=self.W_U.device)]
        return einops.rearrange(directions, "d_model ... -> ... d_model")

    @torch.no_grad()
    def generate(
        self,
        input: str | list[str] | torch.Tensor = "",
        max_new_tokens: int = 10,
        stop_at_eos: bool = True,
        eos_token_id: int | None = None,
        do_sample: bool = True,
        top_k: int | None = None,
        top_p: float | None = None,
        temperature: float = 1.0,
        freq_penalty: float = 0.0,
        use_past_kv_cache: bool = True,
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
        return_type: str = "input",
        verbose: bool = True,
        seed: int | None = None,
        attention_mask: torch.Tensor | None = None,
    ):
        """Sample a continuation, TL-style: returns the prompt *and* the new tokens — text for text
        input (``return_type="input"`` or ``"str"``), a tensor for tensor input or ``"tokens"``.

        The loop is :func:`tinyinterp.models.generation.sample_tokens`, the one ``tinyinterp generate`` uses, and
        text is encoded by the same BOS policy (``<|endoftext|>`` first unless ``prepend_bos=False``).
        Texts of different lengths are left-padded (``padding_side``) and the padding is masked, so each
        row continues exactly as it would alone (greedy); returned texts leave the padding out.
        ``do_sample=False`` is greedy. Rows that produce ``eos_token_id`` (default ``<|endoftext|>``) are
        padded with it afterwards when ``stop_at_eos``. Runs on our KV cache unless
        ``use_past_kv_cache=False``; ``verbose`` shows a progress bar."""
        from tinyinterp.models.generation import sample_tokens

        tokens, mask, sampling, eos, generator, text_input = self._generation_setup(
            input, max_new_tokens, stop_at_eos, eos_token_id, do_sample, top_k, top_p, temperature,
            use_past_kv_cache, prepend_bos, padding_side, seed, attention_mask,
        )
        new = sample_tokens(self, tokens, sampling, sampling.max_new_tokens, eos, generator,
                            attention_mask=mask, freq_penalty=freq_penalty, progress=verbose)
        out = torch.cat([tokens, new], dim=1)
        if return_type == "tokens" or (not text_input and return_type == "input"):
            return out
        return self._decode_generated(out, mask, new.shape[1], isinstance(input, str))

    @torch.no_grad()
    def generate_stream(
        self,
        input: str | list[str] | torch.Tensor = "",
        max_new_tokens: int = 10,
        max_tokens_per_yield: int = 25,
        stop_at_eos: bool = True,
        eos_token_id: int | None = None,
        do_sample: bool = True,
        top_k: int | None = None,
        top_p: float | None = None,
        temperature: float = 1.0,
        freq_penalty: float = 0.0,
        use_past_kv_cache: bool = True,
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
        return_type: str = "input",
        verbose: bool = False,
        seed: int | None = None,
        attention_mask: torch.Tensor | None = None,
    ):
        """:meth:`generate`, yielded in chunks as TL's ``generate_stream``: every ``max_tokens_per_yield``
        new tokens (and at the end) a chunk — the first with the prompt, later ones the new tokens only;
        tensors, or text for text input / ``return_type="str"``. Same loop, so the chunks joined equal
        :meth:`generate`'s output for the same seed."""
        from tinyinterp.models.generation import sample_steps

        if max_tokens_per_yield < 1:
            raise TinyinterpError(f"generate_stream: max_tokens_per_yield must be >= 1, got {max_tokens_per_yield}")
        tokens, mask, sampling, eos, generator, text_input = self._generation_setup(
            input, max_new_tokens, stop_at_eos, eos_token_id, do_sample, top_k, top_p, temperature,
            use_past_kv_cache, prepend_bos, padding_side, seed, attention_mask,
        )
        as_text = return_type == "str" or (text_input and return_type == "input")
        pending, first = [], True

        def chunk():
            new = torch.stack(pending, dim=1)
            if first:
                out = torch.cat([tokens, new], dim=1)
                return self._decode_generated(out, mask, new.shape[1], isinstance(input, str)) if as_text else out
            if not as_text:
                return new
            texts = [self._require_tokenizer().decode(row) for row in new.tolist()]
            return texts[0] if isinstance(input, str) else texts

        for nxt in sample_steps(self, tokens, sampling, sampling.max_new_tokens, eos, generator,
                                attention_mask=mask, freq_penalty=freq_penalty, progress=verbose):
            pending.append(nxt)
            if len(pending) == max_tokens_per_yield:
                yield chunk()
                pending, first = [], False
        if pending:
            yield chunk()

    def _generation_setup(self, input, max_new_tokens, stop_at_eos, eos_token_id, do_sample, top_k, top_p,
                          temperature, use_past_kv_cache, prepend_bos, padding_side, seed, attention_mask):
        """(tokens, mask, SamplingConfig, eos id or None, generator, whether the input was text)."""
        from tinyinterp.models.generation import SamplingConfig

        text_input = isinstance(input, str) or (isinstance(input, list) and bool(input) and isinstance(input[0], str))
        if text_input:
            tokens, mask = self._tokenize(input, prepend_bos=prepend_bos, padding_side=padding_side or "left")
            if attention_mask is not None:
                mask = self._normalise_mask(torch.as_tensor(attention_mask, device=tokens.device).bool())
        else:
            tokens, mask = self._tokens_and_mask(torch.as_tensor(input, device=self._device()), prepend_bos,
                                                 padding_side, attention_mask)
        room = self.cfg.n_ctx - tokens.shape[1]
        if room <= 0:
            raise TinyinterpError(f"generate: the prompt has {tokens.shape[1]} tokens, the model's context is {self.cfg.n_ctx}")
        sampling = SamplingConfig(
            max_new_tokens=min(max_new_tokens, room), temperature=temperature if do_sample else 0.0,
            top_k=top_k, top_p=top_p, seed=seed, use_kv_cache=use_past_kv_cache, stop_at_eot=stop_at_eos,
        )
        eos = eos_token_id if eos_token_id is not None else (self.tokenizer.eot_id if self.tokenizer else None)
        generator = torch.Generator(device=tokens.device).manual_seed(seed) if seed is not None else None
        return tokens, mask, sampling, eos if stop_at_eos else None, generator, text_input

    def _decode_generated(self, out: torch.Tensor, mask: torch.Tensor | None, n_new: int, single: bool):
        """Texts of prompt + new tokens, the padding left out."""
        rows = out.tolist()
        if mask is not None:
            real = torch.cat([mask, torch.ones(mask.shape[0], n_new, dtype=torch.bool, device=mask.device)], dim=1).tolist()
            rows = [[t for t, keep in zip(row, keeps) if keep] for row, keeps in zip(rows, real)]
        texts = [self._require_tokenizer().decode(row) for row in rows]
        return texts[0] if single else texts
