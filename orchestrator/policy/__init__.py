"""Pure decisions, free of Ray and torch and tested as tables: what to do after a failure, what an
attempt after a failure looks like (elastic), when a gang hangs, when to stop, how runs end."""
