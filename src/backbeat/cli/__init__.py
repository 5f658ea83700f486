"""The ``backbeat`` command line. Internal package: the commands are the interface."""
