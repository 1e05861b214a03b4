from checkout.app import create_app
from checkout.settings import Settings
from common.logging import configure_logging
from common.runtime import serve


def main() -> None:
    settings = Settings()
    configure_logging(settings.service_name, settings.log_level)
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
