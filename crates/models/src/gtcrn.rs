//! GTCRN: streaming grouped temporal convolutional recurrent network at 16 kHz on tract.
