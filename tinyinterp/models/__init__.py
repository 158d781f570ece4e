"""Models: the config, the presets (zoo), our hooked transformer and its TransformerLens surface, the one sampler, devices and ``tinyinterp.load``."""
