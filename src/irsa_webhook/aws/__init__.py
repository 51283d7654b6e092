"""Code that talks to AWS or reads its documents; only the commands that use it import it."""
