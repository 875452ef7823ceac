"""Graphs: descriptions (spec), processes (bringup), launch files (launch_description), a running
graph watched from outside (monitor), lifecycle requests (lifecycle)."""
