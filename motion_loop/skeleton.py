"""Facts about the 22-joint HumanML3D (SMPL body) skeleton, kept in one place."""

JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee",
    "spine2", "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot",
    "neck", "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
NUM_JOINTS = len(JOINT_NAMES)
FPS = 20.0
MAX_FRAMES = 196  # longest HumanML3D training motion (9.8 s at 20 fps)

# Right leg, left leg, spine/head, right arm, left arm (MDM's drawing order).
KINEMATIC_CHAIN = (
    (0, 2, 5, 8, 11),
    (0, 1, 4, 7, 10),
    (0, 3, 6, 9, 12, 15),
    (9, 14, 17, 19, 21),
    (9, 13, 16, 18, 20),
)
CHAIN_COLORS = ("#DD5A37", "#D69E00", "#B75A39", "#FF6D00", "#DDB50E")

LEFT_FOOT = (7, 10)   # ankle, toe
RIGHT_FOOT = (8, 11)
# Right hip, left hip, right shoulder, left shoulder: defines the body's facing direction.
FACE_JOINTS = (2, 1, 17, 16)
