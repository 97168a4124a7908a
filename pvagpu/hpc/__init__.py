"""The processor classes of pvapy.hpc, with p4p Values for PvObjects."""
from .user_data_processor import UserDataProcessor
from .ad_image_processor import AdImageProcessor
from .ad_output_file_processor import AdOutputFileProcessor

__all__ = ["UserDataProcessor", "AdImageProcessor", "AdOutputFileProcessor"]
