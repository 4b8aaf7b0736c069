"""Golden tier: journals written by earlier versions, replayed to catch format and determinism breaks."""
