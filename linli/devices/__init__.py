"""Devices: the registry of device types, the MQTT protocol, ingest, alarms, commands and the data hub."""
