"""Story generation in the style of TinyStories: prompts from a child's vocabulary, an LLM, JSONL out.

Modules: ``prompts`` (features, word sampling, the paper's prompt template), ``store`` (append-only
JSONL with torn-line repair), ``runner`` (N stories → JSONL, resumable), ``instruct``
(TinyStories-Instruct records and the Instruct-OOD split), ``batch`` (OpenAI Batch API mode),
``cli`` (``tinyinterp datagen stories|instruct|ood|batch``). See docs/datagen.md.
"""
