"""MHD (IHE Mobile access to Health Documents, FHIR R4) read view of the registry: ITI-67 and ITI-68."""
