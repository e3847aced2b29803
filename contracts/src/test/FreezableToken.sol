// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.19;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title FreezableToken
/// @notice Test only: a 6-decimal ERC-20 whose transfers to a frozen address revert, as a stablecoin's
///         blocklist does; lets the pool tests make a payout's transfer fail. Anyone mints and freezes.
contract FreezableToken is ERC20 {
    mapping(address => bool) public frozen;

    constructor() ERC20("Freezable USD", "fUSD") {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function setFrozen(address account, bool value) external {
        frozen[account] = value;
    }

    function _beforeTokenTransfer(address, address to, uint256) internal view override {
        require(!frozen[to], "FreezableToken: recipient frozen");
    }
}
