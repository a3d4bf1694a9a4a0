"""The shipped placement instances (JSON files beside this module), installed as loraplace.instances."""
