"""Networks, features, training, evaluation, export and the artifact registry.

The daemon imports only ``artifact`` and ``registry``; training and evaluation modules pull in
scikit-learn, scipy and matplotlib (the ``train`` extra) and are never imported by the service.
"""
