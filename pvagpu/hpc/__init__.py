"""The processor classes of pvapy.hpc, with p4p Values for PvObjects."""
from .user_data_processor import UserDataProcessor
from .ad_image_processor import AdImageProcessor
from .ad_output_file_processor import AdOutputFileProcessor
from .data_encryptor import DataEncryptor
from .ad_image_data_encryptor import AdImageDataEncryptor
from .data_decryptor import DataDecryptor
from .ad_image_data_decryptor import AdImageDataDecryptor

__all__ = ["UserDataProcessor", "AdImageProcessor", "AdOutputFileProcessor",
           "DataEncryptor", "AdImageDataEncryptor", "DataDecryptor", "AdImageDataDecryptor"]
