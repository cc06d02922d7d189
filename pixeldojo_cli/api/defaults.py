"""The published API's constants, cheap to import (no httpx): settings start from them."""

# The API's base URL as published.
DEFAULT_BASE_URL = "https://pixeldojo.ai/api/v1"
