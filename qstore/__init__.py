"""qstore: quantum machine learning on top of :mod:`qsim_core`.

Data loading (:mod:`qstore.data`), HDF5 checkpoints (:mod:`qstore.ml.checkpoint`),
hybrid models and training, the IonQ adapter and a local IonQ-compatible
server. ``qstore`` uses ``qsim_core``; never the reverse.
"""
