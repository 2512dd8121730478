"""Kubernetes: `meshway ingress-controller` translates Ingress objects as the Kong Ingress Controller does."""
