"""qstore: quantum machine learning and remote execution on top of :mod:`qsim_core`.

* :mod:`qstore.data`: datasets (PetImages folders, synthetic images, scikit-learn's digits),
  preprocessing, and a run's data settings (:class:`~qstore.data.DataConfig`).
* :mod:`qstore.ml`: hybrid models, training, HDF5 checkpoints, sweeps, the torch layer.
* :mod:`qstore.ionq`: IonQ's JSON, a REST client, cost estimates, a local IonQ-compatible server.
* :mod:`qstore.execution`: the asynchronous executor and the local-vs-remote comparison.
* :mod:`qstore.distributed`: the engine on a Dask cluster.
* :mod:`qstore.cli`: the ``qstore`` command; :mod:`qstore.settings`: training settings declared once.

``qstore`` uses ``qsim_core`` through its public API only; never the reverse (see docs/ARCHITECTURE.md).
"""
