"""tinyinterp — train, grade and look inside small TinyStories language models.

    >>> import tinyinterp
    >>> model = tinyinterp.load("runs/demo")   # or "roneneldan/TinyStories-33M", "gpt2-xl", a local HF folder
    >>> tokens = torch.tensor([model.tokenizer.encode("Once upon a time")])
    >>> logits, cache = model.run_with_cache(tokens)

See README.md for the tour and AGENTS.md for the map of the code.
"""

__version__ = "0.1.0"

__all__ = ["HookedTransformer", "load", "__version__"]

# The old flat module paths (listed in _moved.py) import the moved modules themselves.
from tinyinterp import _moved  # noqa: E402

_moved.install()


def __getattr__(name):
    # Lazy so that `tinyinterp --help` and light imports do not pay for torch + transformers.
    if name == "load":
        from tinyinterp.models.loading import load

        return load
    if name == "HookedTransformer":
        from tinyinterp.models.transformer import HookedTransformer

        return HookedTransformer
    raise AttributeError(f"module 'tinyinterp' has no attribute {name!r}")
