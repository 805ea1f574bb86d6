"""The ``parm`` command line: the top floor.

Thin: each subcommand parses options and calls into a package below (``deploy``,
``bench``, ``train``); nothing below imports from here.
"""
