"""What runs: the loader for generated modules and the launchers that call them."""
