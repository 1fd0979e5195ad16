"""Staff accounts: who may sign in, how (password, two factors) and for how long (sessions)."""
