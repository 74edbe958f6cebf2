"""``repsim extract``: stream a PyTorch model's layer outputs into an activation store.

Modules: ``models`` (load ``file.py:factory``, ``package.module:factory`` or TorchScript),
``inputs`` (``.npy``/``.npz``/HDF5/Zarr inputs read batch by batch), ``hooks`` (layer globs and
forward hooks), ``reductions`` (output -> stored rows), ``run`` (the streaming, resumable loop).
torch is imported only inside functions, so importing this package does not need it.
"""
