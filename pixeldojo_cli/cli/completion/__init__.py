"""Shell completion: the fast TAB path and the candidates it offers."""
