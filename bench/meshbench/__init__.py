"""meshway's load benchmark: meshway side by side with nginx, HAProxy and the origin itself."""
