"""Models shared by the offline job and the stream: network, artifact, runtime."""
