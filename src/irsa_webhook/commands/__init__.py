"""The subcommands of ``irsa-webhook``, one module each; ``cli`` imports only the one invoked."""

EXIT_USAGE = 2


class UsageError(Exception):
    """A subcommand cannot run with the input it was given (a file, an argument).

    ``cli.main`` prints the message as one line, ``irsa-webhook: <message>``, and exits with
    ``EXIT_USAGE``; say in it what to do instead.
    """
