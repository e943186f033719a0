"""The remote-code set: every file here is what ``save_pretrained`` may ship next to the weights.

Only relative imports between these files and imports of torch / transformers: a ``trust_remote_code=True`` user
needs nothing else. Head-only I/O (``save_head``, ``from_encoder(head=...)``) is a lazy call into the installed
package (``hf_bridges.heads``). This ``__init__`` stays empty so that light modules (``registry``, ``errors``) can be
imported without torch.
"""
