"""Research drivers (each a command) and what they share (`workbench`)."""
