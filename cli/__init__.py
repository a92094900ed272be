"""The ``witnp`` command line (installed as ``witnp.cli``)."""
