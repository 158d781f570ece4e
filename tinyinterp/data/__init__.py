"""Text to tokens: tokenizers, tokenized corpora and their readers, the child lexicon, the Instruct format, where the shared data lives."""
