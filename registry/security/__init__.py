"""Who may call: VIHF assertions (SOAP), bearer tokens (FHIR), XML signatures (VIHF, DSG)."""
