"""The API: transport (send, retries), rate limiting, the Client, typed results, the model cache."""
