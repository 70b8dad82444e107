"""The server side of the monitoring agent: devices, activity, screenshots, timelines."""
