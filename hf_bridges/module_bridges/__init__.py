"""Bridges over plain ``nn.Module`` encoders (graph networks, custom CNNs, audio models) or precomputed features.

Their encoder is code, not a config: it is never saved and cannot be rebuilt from the Hub, so these classes live with
the installed package (not in the remote-code set next to the weights) and are rebuilt with ``module=`` at load.
"""
