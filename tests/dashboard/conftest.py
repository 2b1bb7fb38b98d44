"""The dashboard tests' shared stores: the fixtures of test_app_pages, for every file here."""
from test_app_pages import app_env, demo_store, long_env, long_store  # noqa: F401
