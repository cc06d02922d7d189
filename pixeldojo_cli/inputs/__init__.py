"""What the user asks for: -p parsing, the schema check, cost estimates."""
