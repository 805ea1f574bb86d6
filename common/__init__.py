"""What training, serving and the model containers share, defined once.

- ``codes``: the encoders and decoders (sum, concat, linear), used by training and serving
- ``bundle``: the model bundle format (manifest + safetensors weights)
- ``datatypes``: the one table of v2 tensor datatypes and their NumPy dtypes
- ``architectures``, ``models``: the registry of networks a bundle can name (torch)
- ``buckets``: latency histogram buckets, so both sides of an instance call line up
- ``clock``: the one seam through which time enters (the loop's clock, a simulated one)
- ``backoff``: retry delays with jitter
- ``runtime``: where parm keeps its files, and how an entry point runs its event loop

Nothing here imports another package of this project except ``proto``-free leaves:
this is the bottom floor that every room may stand on.
"""
