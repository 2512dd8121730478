Kind = "proxy-defaults"
Name = "global"

config {
  protocol = "http"
}

MeshGateway = {
  mode = "local"
}
