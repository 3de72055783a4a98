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

# Parent of each joint (pelvis is the root), derived from the kinematic chains.
PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)

# Bone lengths in metres (joint i to PARENTS[i]) of HumanML3D's target skeleton: every processed
# HumanML3D motion is retargeted to these lengths (measured on new_joints_012314, std < 1e-6).
BONE_LENGTHS = (
    0.0, 0.1031, 0.1099, 0.1316, 0.3936, 0.3902, 0.1432, 0.4324, 0.4256, 0.0574, 0.1434,
    0.1494, 0.2194, 0.1375, 0.1434, 0.1030, 0.1316, 0.1230, 0.2568, 0.2631, 0.2660, 0.2699,
)

# Unit direction of each joint's incoming bone in HumanML3D's rest frame (y up, body facing +z,
# the body's left at +x): `paramUtil.t2m_raw_offsets`. HumanML3D's inverse kinematics measures every
# local rotation against these directions, so they define what the 6D rotation features mean.
RAW_OFFSETS = (
    (0, 0, 0), (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, -1, 0),
    (0, 1, 0), (0, -1, 0), (0, -1, 0), (0, 1, 0), (0, 0, 1), (0, 0, 1),
    (0, 1, 0), (1, 0, 0), (-1, 0, 0), (0, 0, 1), (0, -1, 0), (0, -1, 0),
    (0, -1, 0), (0, -1, 0), (0, -1, 0), (0, -1, 0),
)
# Rest-pose bone vectors in metres (joint i minus PARENTS[i]): legs and arms straight down, feet
# and head pointing forward. Forward kinematics of identity rotations from these gives that pose.
REST_OFFSETS = tuple(
    tuple(float(d) * length for d in direction)
    for direction, length in zip(RAW_OFFSETS, BONE_LENGTHS)
)


# KIT-ML (MDM's second text-to-motion dataset): 21 joints, 12.5 fps, 251 features per frame.
# Kinematic chains as MDM's paramUtil.kit_kinematic_chain (right leg, left leg, spine/head,
# right arm, left arm), drawn in the same colours.
KIT_NUM_JOINTS = 21
KIT_FPS = 12.5
KIT_KINEMATIC_CHAIN = (
    (0, 11, 12, 13, 14, 15),
    (0, 16, 17, 18, 19, 20),
    (0, 1, 2, 3, 4),
    (3, 5, 6, 7),
    (3, 8, 9, 10),
)
KIT_JOINT_NAMES = (
    "pelvis", "spine", "chest", "neck", "head",
    "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle", "right_foot", "right_toe",
    "left_hip", "left_knee", "left_ankle", "left_foot", "left_toe",
)
KIT_PARENTS = (-1, 0, 1, 2, 3, 3, 5, 6, 3, 8, 9, 0, 11, 12, 13, 14, 0, 16, 17, 18, 19)
KIT_LEFT_FOOT = (19, 20)   # MDM's fid_l (foot, toe)
KIT_RIGHT_FOOT = (14, 15)
# KIT positions are in the dataset's own units (root height about 560-1000); MDM draws them scaled
# by 0.003 where it draws HumanML3D metres by 1.3, so one KIT unit is drawn as 0.003 / 1.3 metres.
KIT_METRES_PER_UNIT = 0.003 / 1.3


def kinematic_chain(num_joints: int) -> tuple[tuple[int, ...], ...]:
    """The chains to draw for a skeleton of ``num_joints`` joints (22: HumanML3D, 21: KIT)."""
    chains = {NUM_JOINTS: KINEMATIC_CHAIN, KIT_NUM_JOINTS: KIT_KINEMATIC_CHAIN}
    if num_joints not in chains:
        raise ValueError(f"no skeleton with {num_joints} joints: HumanML3D has {NUM_JOINTS}, KIT {KIT_NUM_JOINTS}")
    return chains[num_joints]
