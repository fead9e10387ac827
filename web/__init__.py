"""The person's web page (static/, built from src/ by scripts/build_web.sh), served by
hashmatch.server.web; installed as package data so a wheel serves it too."""
