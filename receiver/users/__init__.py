"""People who sign in to the console: their names, password digests, roles and sign-in sessions."""
