"""Networks: frame autoencoder, text / trajectory encoders, the video UNet with Multiscale Fusion."""
