"""People who use the dashboard: accounts, sign-in, API tokens and sign-in throttling."""
