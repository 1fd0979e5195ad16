"""Settings: payment processors, API tokens, ..."""
