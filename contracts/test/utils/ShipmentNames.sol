// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {Strings} from "@openzeppelin/contracts/utils/Strings.sol";

/// @notice Shipment names as ColdChainEscrow takes them: "0x" + the buyer's address in lowercase hex + ":"
///         + reference, and the id the escrow derives (keccak256("shipment:" + name), the oracle's
///         subject_id("shipment", name)). Written apart from the contract's own check, with OpenZeppelin's
///         hex encoder, so the suites compare two implementations.
library ShipmentNames {
    function nameOf(address buyer, string memory tail) internal pure returns (string memory) {
        return string.concat(Strings.toHexString(buyer), ":", tail);
    }

    /// @notice A reference made of `n`: "s-<n>".
    function ref(uint256 n) internal pure returns (string memory) {
        return string.concat("s-", Strings.toString(n));
    }

    function idOf(string memory name) internal pure returns (bytes32) {
        return keccak256(bytes(string.concat("shipment:", name)));
    }
}
