"""What the command groups share (private to `etfcore.cli`)."""


class UsageError(Exception):
    """A command line that parses but makes no sense (e.g. two options that go together, one
    given): `main` reports it as argparse does, usage and exit status 2."""
