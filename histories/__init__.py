"""Pinned histories with expected verdicts: the regression corpus, plus small examples."""
