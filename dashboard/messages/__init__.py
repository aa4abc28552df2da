"""Messages we sent: one row each, its state machine, decoded failures and the verdict."""
