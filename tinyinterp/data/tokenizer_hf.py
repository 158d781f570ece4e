"""The Hugging Face tokenizer surface of :class:`tinyinterp.data.tokenizer.Tokenizer` (what TL utilities and SAELens read).

TransformerLens's utilities (``tokenize_and_concatenate``, ``get_attention_mask``, its evals) and SAELens's
activation store / evaluator treat ``model.tokenizer`` as a ``transformers`` tokenizer: they read
``bos_token_id`` / ``eos_token_id`` / ``pad_token_id``, set ``padding_side``, call ``tokenizer(texts,
return_tensors="pt", padding=True)``, ``encode(text, return_tensors="pt")``, ``batch_decode``, ``get_vocab()``.
:class:`HFTokenizerSurface` gives our tokenizer exactly those attributes and call signatures. Calls that
need HF's machinery (padding, truncation, tensors, attention masks) go to a ``PreTrainedTokenizerFast``
built lazily over a *copy* of our ``tokenizer.json``: HF's ``__call__`` switches padding/truncation on
its backend in place, so sharing ours would change what our own ``encode`` returns. Anything else HF
tokenizers have (``tokenize``, ``all_special_ids``, ``apply_chat_template``, …) is forwarded to that view.

Special tokens: ``<|endoftext|>`` is BOS, EOS, PAD and UNK (as for GPT-2 / GPT-Neo, with TL's pad = eos).
``vocab_size`` keeps OUR meaning (every token, ``<|endoftext|>`` included, = ``model.cfg.d_vocab``);
HF's ``vocab_size`` leaves added tokens out, ``len(tokenizer)`` is the same in both.

    >>> batch = model.tokenizer(["Once upon", "a time there was"], return_tensors="pt", padding=True)
    >>> batch["input_ids"].shape, batch["attention_mask"].sum(1)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import tokenizers

from tinyinterp.errors import TinyinterpError

_PADDING_SIDES = ("left", "right")
# HF methods that grow the vocabulary: the model's embedding is fixed by its weights, so refuse them.
_VOCAB_GROWING = frozenset({"add_tokens", "add_special_tokens", "train_new_from_iterator"})


def _ids_list(ids: Any) -> list[int] | int:
    """A token id sequence (list, numpy array, tensor) as a list of ints; a single id stays an int."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if isinstance(ids, int):
        return ids
    return [int(i) for i in ids]


class HFTokenizerSurface:
    """Mixin for ``Tokenizer`` (needs ``self._hf``, ``self.eot_token``, ``self.eot_id``): HF attributes + calls."""

    _hf: tokenizers.Tokenizer
    eot_token: str
    eot_id: int
    _padding_side: str = "right"
    _truncation_side: str = "right"
    _pad_token: str | None = None  # None = <|endoftext|>
    _model_max_length: int | None = None  # None = HF's "no limit"

    # ----- special tokens (BOS = EOS = PAD = UNK = <|endoftext|>, as in training) -----------------

    @property
    def bos_token(self) -> str:
        return self.eot_token

    @property
    def eos_token(self) -> str:
        return self.eot_token

    @property
    def unk_token(self) -> str:
        return self.eot_token

    @property
    def bos_token_id(self) -> int:
        return self.eot_id

    @property
    def eos_token_id(self) -> int:
        return self.eot_id

    @property
    def unk_token_id(self) -> int:
        return self.eot_id

    @property
    def pad_token(self) -> str:
        return self._pad_token or self.eot_token

    @pad_token.setter
    def pad_token(self, token: str | None) -> None:
        if token is not None and self._hf.token_to_id(str(token)) is None:
            raise TinyinterpError(f"pad_token {token!r} is not in the vocabulary; use an existing token such as {self.eot_token!r}")
        self._pad_token = None if token is None else str(token)
        self._sync_view()

    @property
    def pad_token_id(self) -> int:
        return self._hf.token_to_id(self.pad_token)

    # ----- settable HF options, kept on our object so a pickled/copied tokenizer keeps them ------

    @property
    def padding_side(self) -> str:
        return self._padding_side

    @padding_side.setter
    def padding_side(self, side: str) -> None:
        if side not in _PADDING_SIDES:
            raise TinyinterpError(f"padding_side must be 'left' or 'right', got {side!r}")
        self._padding_side = side
        self._sync_view()

    @property
    def truncation_side(self) -> str:
        return self._truncation_side

    @truncation_side.setter
    def truncation_side(self, side: str) -> None:
        if side not in _PADDING_SIDES:
            raise TinyinterpError(f"truncation_side must be 'left' or 'right', got {side!r}")
        self._truncation_side = side
        self._sync_view()

    @property
    def model_max_length(self) -> int:
        return self.hf_tokenizer.model_max_length if self._model_max_length is None else self._model_max_length

    @model_max_length.setter
    def model_max_length(self, n: int) -> None:
        self._model_max_length = int(n)
        self._sync_view()

    # ----- vocabulary -----------------------------------------------------------------------------

    def get_vocab(self) -> dict[str, int]:
        """Token string -> id, ``<|endoftext|>`` included (HF's ``get_vocab``)."""
        return self._hf.get_vocab(with_added_tokens=True)

    @property
    def vocab(self) -> dict[str, int]:
        return self.get_vocab()

    def convert_ids_to_tokens(self, ids: Any, skip_special_tokens: bool = False) -> str | list[str]:
        """Raw BPE token strings (``Ġ`` for a leading space) of an id or a sequence of ids, as HF returns them."""
        ids = _ids_list(ids)
        if isinstance(ids, int):
            return self._token_of(ids)
        return [self._token_of(i) for i in ids if not (skip_special_tokens and i == self.eot_id)]

    def convert_tokens_to_ids(self, tokens: str | Iterable[str]) -> int | list[int]:
        """Ids of raw token strings; an unknown string maps to the UNK id (``<|endoftext|>``), as in HF."""
        if isinstance(tokens, str):
            found = self._hf.token_to_id(tokens)
            return self.unk_token_id if found is None else found
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def _token_of(self, token_id: int) -> str:
        token = self._hf.id_to_token(int(token_id))
        if token is None:
            raise IndexError(f"token id {token_id} is outside the vocabulary (size {len(self)})")
        return token

    # ----- HF calls -------------------------------------------------------------------------------

    def __call__(self, text: Any = None, *args: Any, **kwargs: Any):
        """HF's ``tokenizer(text, padding=..., truncation=..., max_length=..., return_tensors=...)`` →
        a ``BatchEncoding`` with ``input_ids`` and ``attention_mask``. Nothing is prepended: our
        tokenizer has no BOS template (``add_special_tokens`` changes nothing), as GPT-2's."""
        return self.hf_tokenizer(text, *args, **kwargs)

    def batch_decode(self, sequences: Iterable[Any], skip_special_tokens: bool = False, **kwargs: Any) -> list[str]:
        """HF's ``batch_decode``: one string per sequence (a 2-D tensor, or a list of id lists)."""
        return [self.decode(seq, skip_special_tokens=skip_special_tokens, **kwargs) for seq in sequences]

    def _hf_decode(self, ids: list[int] | int, skip_special_tokens: bool, **kwargs: Any) -> str:
        if isinstance(ids, int):
            ids = [ids]
        if kwargs:  # e.g. clean_up_tokenization_spaces=True: HF's own post-processing
            return self.hf_tokenizer.decode(ids, skip_special_tokens=skip_special_tokens, **kwargs)
        return self._hf.decode(ids, skip_special_tokens=skip_special_tokens)

    # ----- the HF view ----------------------------------------------------------------------------

    @property
    def hf_tokenizer(self):
        """A ``transformers.PreTrainedTokenizerFast`` over a copy of this tokenizer (built on first use)."""
        view = self.__dict__.get("_hf_view")
        if view is None:
            from transformers import PreTrainedTokenizerFast

            backend = tokenizers.Tokenizer.from_str(self._hf.to_str())  # a copy: HF's calls mutate their backend
            backend.no_padding()
            backend.no_truncation()
            eot = self.eot_token
            view = PreTrainedTokenizerFast(
                tokenizer_object=backend, bos_token=eot, eos_token=eot, unk_token=eot, pad_token=self.pad_token,
                clean_up_tokenization_spaces=False,
            )
            self.__dict__["_hf_view"] = view
            self._sync_view()
        return view

    def _sync_view(self) -> None:
        view = self.__dict__.get("_hf_view")
        if view is None:
            return
        view.padding_side = self._padding_side
        view.truncation_side = self._truncation_side
        view.pad_token = self.pad_token
        if self._model_max_length is not None:
            view.model_max_length = self._model_max_length

    def __getattr__(self, name: str) -> Any:
        # Only reached for names our class does not define: forward HF-tokenizer attributes to the view.
        if name.startswith("_"):
            raise AttributeError(name)
        if name in _VOCAB_GROWING:
            raise TinyinterpError(
                f"tokenizer.{name}: a tinyinterp model's vocabulary is fixed by its embedding; it cannot take new tokens"
            )
        return getattr(self.hf_tokenizer, name)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_hf_view", None)  # rebuilt on first use after unpickling
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
