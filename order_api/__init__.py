"""The order API process (FastAPI): reserve, persist PENDING, answer 202."""
