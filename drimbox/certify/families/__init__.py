"""The scenario families of the certification kit, one module each."""
