"""What runs a saved bridge: the remote-code set ``save_pretrained`` ships next to the weights (registry,
configuration_bridge, head, pairwise, modeling_bridge; torch and transformers only). What builds one is
``hf_bridges.building``, reached lazily. This ``__init__`` stays empty so that ``registry`` imports without torch.
"""
