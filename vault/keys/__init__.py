"""Key providers (master keys) and the subject-key / data-key hierarchy."""
