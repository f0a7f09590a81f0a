"""The portable tick path: every module here has a C twin in port/c/."""
